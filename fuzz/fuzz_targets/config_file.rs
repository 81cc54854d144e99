//! The settings file (including one dropped on the boot partition by hand) goes through
//! the loader: any text must end in a config or a list of named problems, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match edgecam::config::load_str(text) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
        }
    }
});
