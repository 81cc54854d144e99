//! Every WebSocket text frame goes through the signaling parser first: it must answer
//! every input with a message or an error, never panic, and keep its error text short.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match edgecam::signaling::protocol::parse(text) {
        Ok(message) => {
            // Whatever was accepted can be printed back (logs do this).
            let _ = format!("{message:?}");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.len() < 1024, "error text grows with the input: {}", shown.len());
        }
    }
});
