//! The `edgecam` binary: arguments, config, logging, then `app::serve`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use edgecam::config::{self, ConfigError, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "edgecam",
    version,
    about = "Plug-in IP camera: live H.264 over WebRTC to every browser on the LAN"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the camera daemon (the default).
    Run(RunArgs),
    /// List V4L2 capture devices with their formats, sizes and frame rates.
    Devices,
    /// Validate a config file: exit 0 when valid, 2 naming every bad key.
    CheckConfig { file: PathBuf },
    /// Apply the boot partition's edgecam.toml (run once per boot by edgecam-provision.service).
    Provision {
        /// The settings file on the boot partition.
        #[arg(long, default_value = edgecam::provision::BOOT_FILE)]
        boot: PathBuf,
        /// The system to change (for building images and tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Read a password from stdin and print its argon2 hash for [auth] in the config.
    HashPassword,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    /// Config file (default /etc/edgecam/edgecam.toml, if it exists).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Camera: auto, test, v4l2:/dev/videoN or libcamera.
    #[arg(long)]
    source: Option<String>,
    /// HTTP listen address, e.g. 0.0.0.0:8080.
    #[arg(long)]
    listen: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run(RunArgs::default())) {
        Command::Run(args) => run(args),
        Command::Devices => devices(),
        Command::CheckConfig { file } => check_config(&file),
        Command::Provision { boot, root } => provision(&boot, &root),
        Command::HashPassword => hash_password(),
    }
}

fn hash_password() -> ExitCode {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprintln!("password (the input is shown; pipe it in to keep it off the screen):");
    }
    let mut line = String::new();
    if let Err(e) = std::io::stdin().read_line(&mut line) {
        eprintln!("edgecam hash-password: cannot read stdin: {e}");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    match edgecam::auth::hash_password(password) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("edgecam hash-password: {e}");
            ExitCode::from(2)
        }
    }
}

fn init_logging() {
    // Under systemd, the journal adds its own timestamps and shows no colours.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,webrtc=warn,rtc=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!journald);
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn run(args: RunArgs) -> ExitCode {
    // GStreamer 1.22 (Debian bookworm) keeps an unplugged camera's V4L2 buffer pool, and
    // with it a descriptor on the device, alive after the pipeline is stopped ("orphaned"
    // buffers), so the camera can neither be reopened nor its driver unloaded. Draining
    // the pool on stop instead closes everything (seen with vivid's disconnect; 1.26 on
    // trixie does not need it). Set before any thread exists, as set_var requires.
    // GStreamer drains whenever the variable exists, whatever its value, so "0" is taken
    // here as "GStreamer's default" and removed (the image test's control run uses it).
    match std::env::var_os("GST_V4L2_FORCE_DRAIN") {
        // SAFETY (both): nothing else runs yet: no runtime, no GStreamer, no other thread.
        None => unsafe { std::env::set_var("GST_V4L2_FORCE_DRAIN", "1") },
        Some(v) if v == "0" => unsafe { std::env::remove_var("GST_V4L2_FORCE_DRAIN") },
        Some(_) => {}
    }
    init_logging();
    let file = args.config.clone().or_else(|| {
        let default = PathBuf::from(config::CONFIG_PATH);
        default.exists().then_some(default)
    });
    let overrides = Overrides {
        source: args.source,
        listen: args.listen,
    };
    let cfg = match config::load(file.as_deref(), None, &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("edgecam: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edgecam: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgecam: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: config::Config) -> anyhow::Result<()> {
    let listen = cfg.http.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let bound = listener.local_addr().unwrap_or(listen);
    let shown = if bound.ip().is_unspecified() {
        format!("http://localhost:{}/", bound.port())
    } else {
        format!("http://{bound}/")
    };
    println!(
        "edgecam {} — open {shown} in a browser",
        env!("CARGO_PKG_VERSION")
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    edgecam::app::serve(cfg, listener, shutdown_signal()).await?;
    edgecam::notify::notify("STOPPING=1");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}

fn devices() -> ExitCode {
    let devices = edgecam::capture::v4l2::list_devices();
    if devices.is_empty() {
        println!(
            "No V4L2 capture devices found. `edgecam run` will use the test pattern (source = auto)."
        );
    }
    for d in devices {
        println!(
            "{}: {} (driver {}, {})",
            d.path.display(),
            d.name,
            d.driver,
            d.bus
        );
        for f in &d.formats {
            println!("  {} — {}", f.fourcc, f.description);
            for s in &f.sizes {
                let rates: Vec<String> = s
                    .fps
                    .iter()
                    .map(|r| {
                        format!("{r:.4}")
                            .trim_end_matches('0')
                            .trim_end_matches('.')
                            .to_string()
                    })
                    .collect();
                println!(
                    "    {}x{} @ {} fps",
                    s.width,
                    s.height,
                    if rates.is_empty() {
                        "?".into()
                    } else {
                        rates.join(", ")
                    }
                );
            }
        }
        // Stable names first: they survive unplugging and re-plugging the camera.
        let names = edgecam::capture::v4l2::stable_names(&d.path);
        for n in &names {
            println!("  also: {}", n.display());
        }
        let best = names.first().unwrap_or(&d.path);
        println!("  use: source = \"v4l2:{}\"", best.display());
    }
    gpio_chips();
    ExitCode::SUCCESS
}

/// The GPIO chips, their named and used lines, and where the header's pins would go.
fn gpio_chips() {
    let chips = edgecam::gpio::list_chips();
    println!();
    if chips.is_empty() {
        println!("No GPIO chips (/dev/gpiochip*) found.");
        return;
    }
    for l in &chips {
        let c = &l.chip;
        println!(
            "{}: {} [{}], {} lines",
            c.path.display(),
            c.name,
            c.label,
            c.lines.len()
        );
        for (offset, (name, consumer)) in c.lines.iter().zip(&l.consumers).enumerate() {
            if name.is_empty() && consumer.is_empty() {
                continue;
            }
            let name = if name.is_empty() { "-" } else { name.as_str() };
            match consumer.as_str() {
                "" => println!("  line {offset:>3}: {name}"),
                used => println!("  line {offset:>3}: {name} (used by {used})"),
            }
        }
    }
    let infos: Vec<_> = chips.iter().map(|l| l.chip.clone()).collect();
    for pin in [17u32, 22, 27] {
        match edgecam::gpio::lines::find_line(&infos, pin, None) {
            Ok(a) => println!(
                "header pin {pin} (BCM): {} line {} [{}]",
                a.chip.display(),
                a.offset,
                a.chip_label
            ),
            Err(e) => println!("header pin {pin} (BCM): {e}"),
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load_file_only(file) {
        Ok(c) => {
            // Certificate files are read now: a typo should not wait for the next start.
            if let config::TlsMode::Files { .. } = &c.http.tls
                && let Err(e) = edgecam::web::tls::load(&c.http.tls, &c.state.dir)
            {
                eprintln!("{}: tls.cert_file/tls.key_file: {e}", file.display());
                return ExitCode::from(2);
            }
            println!("{}: valid", file.display());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid(errors)) => {
            for e in errors {
                eprintln!("{}: {e}", file.display());
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn provision(boot: &std::path::Path, root: &std::path::Path) -> ExitCode {
    // Where the daemon will look for the recorded error: the state directory of the
    // settings in place (provisioning runs before the daemon), else the default.
    let current = root.join(config::CONFIG_PATH.trim_start_matches('/'));
    let state_dir = config::load_file_only(&current)
        .or_else(|_| config::load(None, Some(Default::default()), &Overrides::default()))
        .map_or_else(|_| PathBuf::from("/var/lib/edgecam"), |c| c.state.dir);
    match edgecam::provision::run(boot, root, &state_dir) {
        Ok(edgecam::provision::Outcome::NothingToDo) => {
            println!("no {} to apply", boot.display());
            ExitCode::SUCCESS
        }
        Ok(edgecam::provision::Outcome::Applied { kept_as }) => {
            println!(
                "applied {}; the original is kept as {}",
                boot.display(),
                kept_as.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The device boots on with its previous settings; the daemon shows the error.
            eprintln!("edgecam provision: {}: {e}", boot.display());
            ExitCode::from(2)
        }
    }
}
