//! A network namespace of the test's own, with one private address (on a veth pair inside it),
//! for a browser that will not use loopback: the daemon and the browser both run inside
//! it, so their traffic never leaves it. Needs root (CAP_SYS_ADMIN); tests skip without.

use std::process::Command;

/// The address the namespace's dummy interface has.
pub const ADDRESS: &str = "10.99.0.1";

pub struct Netns {
    pub name: String,
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// Creates the namespace, or says why the test is skipped.
    pub fn create_or_skip(test: &str) -> Option<Self> {
        let ns = Self::add_or_skip("t", test)?;
        let n = ns.name.as_str();
        let addr = format!("{ADDRESS}/24");
        for args in [
            vec!["-n", n, "link", "set", "lo", "up"],
            // A veth pair with both ends inside (one carries the address): a plain
            // interface, which browsers gather candidates on, unlike loopback.
            vec![
                "-n", n, "link", "add", "v0", "type", "veth", "peer", "name", "v1",
            ],
            vec!["-n", n, "addr", "add", addr.as_str(), "dev", "v0"],
            vec!["-n", n, "link", "set", "v1", "up"],
            vec!["-n", n, "link", "set", "v0", "up"],
            // A route out, as a LAN has: browsers look for one before gathering.
            vec!["-n", n, "route", "add", "default", "dev", "v0"],
        ] {
            assert!(ip(&args), "ip {args:?}");
        }
        Some(ns)
    }

    /// An empty namespace named for this process (`edgecam-<kind><pid>`), or None with
    /// the reason the test is skipped.
    fn add_or_skip(kind: &str, test: &str) -> Option<Self> {
        let name = format!("edgecam-{kind}{}", std::process::id());
        if !ip(&["netns", "add", &name]) {
            eprintln!("SKIPPED {test}: cannot create a network namespace (needs root)");
            return None;
        }
        Some(Self { name })
    }

    /// Moves the calling thread into the namespace: sockets it (and threads and
    /// processes it starts) opens from now on are the namespace's.
    pub fn enter(name: &str) {
        let path = format!("/run/netns/{name}");
        let file = std::fs::File::open(&path).expect("namespace file");
        use std::os::fd::AsRawFd;
        // SAFETY: a valid descriptor of a network namespace; affects this thread only.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

/// Runs `scenario` inside a namespace of its own, on a thread that enters it first, with
/// a two-worker runtime whose threads (and the browsers and daemon it starts) are all in
/// it; a panic in it fails the caller. Skipped, saying why, where no namespace can be
/// made.
pub fn run_inside<F, Fut>(test: &str, scenario: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let Some(ns) = Netns::create_or_skip(test) else {
        return;
    };
    let name = ns.name.clone();
    let run = std::thread::spawn(move || {
        Netns::enter(&name);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(scenario());
    });
    let result = run.join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        ip(&["netns", "del", &self.name]);
    }
}

/// A thin link: a namespace of its own joined to the test's namespace by a veth pair
/// (`HOST` on this side, `FAR` inside), whose egress toward the namespace can be limited
/// with a token bucket (`tc qdisc … tbf`), as a distant Wi-Fi limits a viewer. Needs root.
pub struct ThinLink {
    ns: Netns,
    host_dev: String,
}

impl ThinLink {
    pub const HOST: &'static str = "10.97.0.1";
    pub const FAR: &'static str = "10.97.0.2";

    pub fn create_or_skip(test: &str) -> Option<Self> {
        let ns = Netns::add_or_skip("w", test)?;
        let host_dev = format!("ecw{}h", std::process::id() % 100_000);
        let far_dev = format!("ecw{}n", std::process::id() % 100_000);
        let n = ns.name.as_str();
        let (host, far) = (format!("{}/24", Self::HOST), format!("{}/24", Self::FAR));
        for args in [
            vec![
                "link", "add", &host_dev, "type", "veth", "peer", "name", &far_dev,
            ],
            vec!["link", "set", &far_dev, "netns", n],
            vec!["addr", "add", &host, "dev", &host_dev],
            vec!["link", "set", &host_dev, "up"],
            vec!["-n", n, "addr", "add", &far, "dev", &far_dev],
            vec!["-n", n, "link", "set", &far_dev, "up"],
            vec!["-n", n, "link", "set", "lo", "up"],
            // A route out, as a LAN has (the client's multicast DNS socket needs one).
            vec!["-n", n, "route", "add", "default", "dev", &far_dev],
        ] {
            assert!(ip(&args), "ip {args:?}");
        }
        Some(Self { ns, host_dev })
    }

    /// Runs `task` inside the namespace, on a thread (and runtime) of its own: the
    /// sockets and processes it makes are the namespace's.
    pub fn spawn_inside<F, Fut>(&self, task: F) -> std::thread::JoinHandle<()>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let name = self.ns.name.clone();
        std::thread::spawn(move || {
            Netns::enter(&name);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(task());
        })
    }

    /// Limits what goes toward the namespace to `kbit` kbit/s (a 200 ms queue, as a Wi-Fi
    /// link buffers; what does not fit is dropped), or lifts the limit with `None`.
    pub fn limit(&self, kbit: Option<u32>) {
        let ok = |args: &[&str]| {
            Command::new("tc")
                .args(args)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let dev = self.host_dev.as_str();
        match kbit {
            Some(k) => {
                let rate = format!("{k}kbit");
                assert!(
                    ok(&[
                        "qdisc", "replace", "dev", dev, "root", "tbf", "rate", &rate, "burst",
                        "16kb", "latency", "200ms"
                    ]),
                    "tc qdisc replace … tbf"
                );
            }
            None => assert!(ok(&["qdisc", "del", "dev", dev, "root"]), "tc qdisc del"),
        }
    }
}

impl Drop for ThinLink {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; the namespace goes with `ns`.
        ip(&["link", "del", &self.host_dev]);
    }
}
