//! The shipped systemd unit has what the appliance relies on, and its hardening keeps
//! `systemd-analyze security` exposure low while still reaching cameras and GPIO.

use std::process::Command;

const UNIT: &str = include_str!("../../systemd/edgecam.service");

fn has(line: &str) -> bool {
    UNIT.lines().any(|l| l.trim() == line)
}

#[test]
fn unit_has_the_service_contract() {
    let _bound = crate::common::time_bound("systemd_unit::unit_has_the_service_contract", None);
    for line in [
        "Type=notify",
        "WatchdogSec=30",
        "Restart=on-failure",
        "User=edgecam",
        "SupplementaryGroups=video gpio",
        "StateDirectory=edgecam",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "DevicePolicy=closed",
        "DeviceAllow=char-video4linux rw",
        "DeviceAllow=char-gpiochip rw",
        "DeviceAllow=/dev/gpiomem rw",
        "DeviceAllow=/dev/gpiomem0 rw",
        "ExecStart=/usr/bin/edgecam run --config /etc/edgecam/edgecam.toml",
        "WantedBy=multi-user.target",
    ] {
        assert!(has(line), "missing: {line}");
    }
}

#[test]
fn exposure_is_at_most_2_5() {
    let _bound = crate::common::time_bound("systemd_unit::exposure_is_at_most_2_5", None);
    // systemd-analyze comes with systemd, on every Debian machine this project targets.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=25"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/systemd/edgecam.service"
        ))
        .output()
        .expect("systemd-analyze runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let level = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for edgecam.service: ")
                .nth(1)
        })
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .expect("an exposure level");
    eprintln!("systemd-analyze security exposure: {level}");
    assert!(level <= 2.5, "exposure {level}");
    assert!(out.status.success(), "above the threshold: {text}");
}

/// The long press's reboot and power-off: the unprivileged daemon writes its request into
/// its runtime directory, which the shipped path unit watches; systemd finds both units
/// well-formed.
#[test]
fn power_requests_reach_the_root_unit() {
    let _bound =
        crate::common::time_bound("systemd_unit::power_requests_reach_the_root_unit", None);
    assert!(has("RuntimeDirectory=edgecam"));
    let path_unit = include_str!("../../systemd/edgecam-power.path");
    let request = format!("/run/edgecam/{}", edgecam::control::POWER_REQUEST);
    assert!(
        path_unit
            .lines()
            .any(|l| l.trim() == format!("PathChanged={request}")),
        "{path_unit}"
    );
    let service = include_str!("../../systemd/edgecam-power.service");
    assert!(service.contains(&format!("ConditionPathExists={request}")));
    assert!(service.contains("reboot|poweroff) exec systemctl"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(format!("{dir}/edgecam-power.path"))
        .arg(format!("{dir}/edgecam-power.service"))
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
