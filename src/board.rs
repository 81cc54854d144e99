//! The board's health, as an owner checking a "laggy camera" needs it: CPU temperature,
//! throttling and undervoltage (now and since boot), load, memory and uptime. Read from
//! the kernel's files under a root (`/` on a device, a fake tree in tests): thermal zones
//! (`/sys/class/thermal`), the Raspberry Pi firmware's `get_throttled` bits and its
//! `rpi_volt` hwmon alarm, `/proc/loadavg`, `/proc/meminfo`, `/proc/uptime`. What a board
//! does not report is absent (`null`), never guessed.

use serde::Serialize;
use std::path::{Path, PathBuf};

/// The Raspberry Pi firmware's throttling word, as its kernel driver exposes it.
const GET_THROTTLED: &str = "sys/devices/platform/soc/soc:firmware/get_throttled";

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    /// The CPU's temperature: the zone named like a CPU's (`cpu-thermal`, `x86_pkg_temp`,
    /// …), else the first zone.
    pub cpu_temp_c: Option<f64>,
    pub thermal_zones: Vec<Zone>,
    /// Throttling and undervoltage, where the firmware reports them.
    pub throttling: Option<Throttling>,
    /// 1, 5 and 15 minute load averages, and the number of CPUs.
    pub load: Option<[f64; 3]>,
    pub cpus: usize,
    pub memory_total_mib: Option<u64>,
    pub memory_available_mib: Option<u64>,
    pub uptime_s: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Zone {
    pub name: String,
    pub temp_c: f64,
}

/// One set of the firmware's conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Conditions {
    pub undervoltage: bool,
    pub frequency_capped: bool,
    pub throttled: bool,
    pub soft_temperature_limit: bool,
}

impl Conditions {
    pub fn any(&self) -> bool {
        self.undervoltage || self.frequency_capped || self.throttled || self.soft_temperature_limit
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    pub now: Conditions,
    pub since_boot: Conditions,
    /// The firmware's word as read (`0x50005`).
    pub raw: u32,
}

/// The firmware's word: bits 0–3 now (undervoltage, frequency capped, throttled, soft
/// temperature limit), bits 16–19 the same since boot.
pub fn parse_throttled(text: &str) -> Option<Throttling> {
    let t = text.trim();
    // Hexadecimal, with 0x (vcgencmd) or without (the kernel driver's sysfs file).
    let hex = t
        .strip_prefix("0x")
        .or_else(|| t.strip_prefix("0X"))
        .unwrap_or(t);
    let raw = u32::from_str_radix(hex, 16).ok()?;
    let at = |shift: u32| Conditions {
        undervoltage: raw & (1 << shift) != 0,
        frequency_capped: raw & (1 << (shift + 1)) != 0,
        throttled: raw & (1 << (shift + 2)) != 0,
        soft_temperature_limit: raw & (1 << (shift + 3)) != 0,
    };
    Some(Throttling {
        now: at(0),
        since_boot: at(16),
        raw,
    })
}

/// `/proc/meminfo`'s total and available, in MiB.
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024)
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

/// `/proc/loadavg`'s three averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Reads everything under `root`.
pub fn read(root: &Path) -> Health {
    let text = |p: &str| std::fs::read_to_string(root.join(p)).ok();
    let thermal_zones = zones(&root.join("sys/class/thermal"));
    let cpu_temp_c = thermal_zones
        .iter()
        .find(|z| {
            let n = z.name.to_ascii_lowercase();
            n.contains("cpu") || n.contains("soc") || n.contains("x86_pkg") || n.contains("core")
        })
        .or(thermal_zones.first())
        .map(|z| z.temp_c);
    let mut throttling = text(GET_THROTTLED).and_then(|t| parse_throttled(&t));
    // Newer kernels report undervoltage through the rpi_volt hwmon device as well.
    if let Some(alarm) = rpi_volt_alarm(&root.join("sys/class/hwmon")) {
        let t = throttling.get_or_insert_with(Throttling::default);
        t.now.undervoltage |= alarm;
        t.since_boot.undervoltage |= alarm;
    }
    let (memory_total_mib, memory_available_mib) =
        text("proc/meminfo").map_or((None, None), |t| parse_meminfo(&t));
    Health {
        cpu_temp_c,
        thermal_zones,
        throttling,
        load: text("proc/loadavg").and_then(|t| parse_loadavg(&t)),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_total_mib,
        memory_available_mib,
        uptime_s: text("proc/uptime")
            .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
            .map(|s| s as u64),
    }
}

/// This board's health as the daemon sees it: [`read`] of `/`, and where the service's
/// `ProcSubset=pid` hides /proc's load, memory and uptime files, the same from sysinfo(2)
/// (memory available then is free plus buffers, MemAvailable being /proc's alone).
pub fn read_live() -> Health {
    let mut h = read(Path::new("/"));
    if h.load.is_some() && h.memory_total_mib.is_some() && h.uptime_s.is_some() {
        return h;
    }
    // SAFETY: sysinfo fills the struct it is given and nothing else.
    let mut info: libc::sysinfo = unsafe { std::mem::zeroed() };
    if unsafe { libc::sysinfo(&mut info) } != 0 {
        return h;
    }
    let unit = u64::from(info.mem_unit.max(1));
    let mib = |v: u64| v * unit / (1024 * 1024);
    let load = |l: u64| l as f64 / f64::from(1u32 << libc::SI_LOAD_SHIFT);
    h.load.get_or_insert([
        load(info.loads[0] as u64),
        load(info.loads[1] as u64),
        load(info.loads[2] as u64),
    ]);
    h.memory_total_mib.get_or_insert(mib(info.totalram as u64));
    h.memory_available_mib
        .get_or_insert(mib(info.freeram as u64 + info.bufferram as u64));
    h.uptime_s.get_or_insert(info.uptime.max(0) as u64);
    h
}

fn zones(dir: &Path) -> Vec<Zone> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("thermal_zone"))
                })
                .collect()
        })
        .unwrap_or_default();
    paths.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| {
                n.to_string_lossy()
                    .trim_start_matches("thermal_zone")
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(u32::MAX)
    });
    paths
        .iter()
        .filter_map(|p| {
            let millis: i64 = std::fs::read_to_string(p.join("temp"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let name = std::fs::read_to_string(p.join("type"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            Some(Zone {
                name,
                temp_c: millis as f64 / 1000.0,
            })
        })
        .collect()
}

fn rpi_volt_alarm(dir: &Path) -> Option<bool> {
    std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
        let name = std::fs::read_to_string(e.path().join("name")).ok()?;
        if name.trim() != "rpi_volt" {
            return None;
        }
        let alarm = std::fs::read_to_string(e.path().join("in0_lcrit_alarm")).ok()?;
        Some(alarm.trim() == "1")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_firmware_word_is_read_bit_by_bit() {
        // Undervoltage now and since boot, throttled since boot (a weak power supply).
        let t = parse_throttled("throttled=0x50001\n".split('=').nth(1).unwrap()).unwrap();
        assert_eq!(t.raw, 0x50001);
        assert!(t.now.undervoltage && !t.now.throttled && t.now.any());
        assert!(t.since_boot.undervoltage && t.since_boot.throttled);
        assert!(!t.since_boot.frequency_capped && !t.since_boot.soft_temperature_limit);
        // The kernel driver prints plain hex without 0x.
        assert_eq!(parse_throttled("50005").unwrap().raw, 0x50005);
        assert_eq!(parse_throttled("0").unwrap().now, Conditions::default());
        assert_eq!(parse_throttled("garbage"), None);
    }

    #[test]
    fn a_fake_raspberry_pi_tree_is_read_whole() {
        let root = tempfile::tempdir().unwrap();
        let put = |p: &str, text: &str| {
            let path = root.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        put("sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
        put("sys/class/thermal/thermal_zone0/temp", "71234\n");
        put("sys/class/thermal/thermal_zone10/type", "gpu\n");
        put("sys/class/thermal/thermal_zone10/temp", "60000\n");
        put("sys/class/thermal/cooling_device0/type", "fan\n");
        put(GET_THROTTLED, "50000\n");
        put("sys/class/hwmon/hwmon0/name", "rpi_volt\n");
        put("sys/class/hwmon/hwmon0/in0_lcrit_alarm", "1\n");
        put("proc/loadavg", "0.52 0.41 0.30 2/190 1234\n");
        put(
            "proc/meminfo",
            "MemTotal:        3884476 kB\nMemFree: 1 kB\nMemAvailable:    3001234 kB\n",
        );
        put("proc/uptime", "12345.67 20000.00\n");
        let h = read(root.path());
        assert_eq!(h.cpu_temp_c, Some(71.234));
        assert_eq!(h.thermal_zones.len(), 2);
        assert_eq!(h.thermal_zones[1].name, "gpu");
        let t = h.throttling.unwrap();
        assert!(t.now.undervoltage, "from the rpi_volt alarm");
        assert!(t.since_boot.undervoltage && t.since_boot.throttled && !t.now.throttled);
        assert_eq!(h.load, Some([0.52, 0.41, 0.30]));
        assert_eq!(
            (h.memory_total_mib, h.memory_available_mib),
            (Some(3793), Some(2930))
        );
        assert_eq!(h.uptime_s, Some(12345));
    }

    #[test]
    fn a_board_that_reports_nothing_has_nothing_made_up() {
        let root = tempfile::tempdir().unwrap();
        let h = read(root.path());
        assert_eq!((h.cpu_temp_c, h.throttling, h.load), (None, None, None));
        assert!(h.thermal_zones.is_empty() && h.cpus >= 1);
    }

    #[test]
    fn the_live_reading_has_load_memory_and_uptime() {
        let h = read_live();
        assert!(h.load.is_some() && h.uptime_s.is_some_and(|u| u > 0));
        assert!(h.memory_total_mib.is_some_and(|m| m > 0));
        assert!(h.memory_available_mib <= h.memory_total_mib);
    }

    #[test]
    fn this_machines_own_files_read() {
        let h = read(Path::new("/"));
        assert!(h.uptime_s.is_some_and(|u| u > 0));
        assert!(h.memory_total_mib.is_some_and(|m| m > 0));
        assert!(h.load.is_some());
        // Thermal zones where this machine has them (a VM may have none).
        let zones = std::fs::read_dir("/sys/class/thermal")
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
                    .count()
            })
            .unwrap_or(0);
        assert!(h.thermal_zones.len() <= zones);
    }
}
