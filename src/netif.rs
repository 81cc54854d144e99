//! This machine's network interfaces, as ONVIF and discovery tell them: names, MACs
//! (from sysfs) and IPv4 addresses (from getifaddrs).

use crate::onvif::Interface;

/// The board's host name (what mDNS announces as `<name>.local`), from the kernel by
/// gethostname(2): the service's `ProcSubset=pid` hides /proc/sys/kernel/hostname.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the pointer and length describe `buf`, which outlives the call; the kernel
    // writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim().to_string()
}

/// Every interface but loopback, with its MAC and first IPv4 address.
pub fn interfaces() -> Vec<Interface> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return out;
    };
    let v4 = ipv4_addresses();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "lo" {
            continue;
        }
        let mac = std::fs::read_to_string(entry.path().join("address"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let ipv4 = v4
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, a, p)| (a.clone(), *p));
        out.push(Interface { name, mac, ipv4 });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// (interface, address, prefix length) for every IPv4 address, from getifaddrs(3).
pub fn ipv4_addresses() -> Vec<(String, String, u8)> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET {
                let addr = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
                let prefix = if ifa.ifa_netmask.is_null() {
                    32
                } else {
                    let mask = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    u32::from_be(mask.sin_addr.s_addr).count_ones() as u8
                };
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, ip.to_string(), prefix));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_has_interfaces_with_macs() {
        // Loopback is left out of the interfaces but has its address.
        assert!(interfaces().iter().all(|i| i.name != "lo"));
        assert!(
            ipv4_addresses()
                .iter()
                .any(|(n, a, _)| n == "lo" && a == "127.0.0.1")
        );
    }
}
