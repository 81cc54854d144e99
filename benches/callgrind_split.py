#!/usr/bin/env python3
"""Instructions per RTP packet sent, split by what spends them.

Reads what `benches/instructions_per_packet.sh` left in its directory: for each server
(edgecam, janus) and viewer count N, `<server>-<N>.json` (the server's pid and the RTP
packets its viewers received in the counted window) and callgrind's dump of that window
(`callgrind.<pid>.*`). The cost of a packet is the difference between two viewer counts
divided by the difference in packets, so what does not grow with viewers (receiving and
depacketizing the shared RTP, timers, the HTTP side) cancels out.

Callgrind counts user-space instructions only: the kernel's side of a send is not in
these numbers (nor in anything else here; see BENCHMARKS.md).
"""

import glob
import json
import os
import re
import sys

# First match wins: (category, pattern over "function [object]").
CATEGORIES = [
    ("SRTP (AES-GCM or AES-CM + HMAC-SHA1)",
     r"srtp|aes|sha1|hmac|ctr128|cipher|gcm|ring::|ring_core|aws_lc|libcrypto|libssl|"
     # Debian's libsrtp2 does its crypto with NSS (freebl, softokn, nspr, plds).
     r"freebl|softokn|nspr|plds|libnss"),
    ("packetizing (H.264 into RTP)",
     r"packetiz|payload|rtpframer|fu_a|stap|rtp::packet::.*marshal|header::.*marshal"),
    ("interceptors (NACK history, reports, TWCC)", r"interceptor|nack|twcc|report"),
    ("hashing (map lookups)", r"sip::hasher|hash_one|hashbrown|hashmap|g_hash"),
    ("allocation and copies",
     r"malloc|free|realloc|calloc|memcpy|memmove|memset|alloc::|bytes::|__libc_|_int_|"
     r"tcache|arena|drop_in_place|clone"),
    ("send path (socket, syscall wrappers)",
     r"sendmsg|sendmmsg|sendto|send_to|poll_send|udp|socket|nice_agent_send|"
     r"libnice|g_socket|libgio|quinn"),
    ("async runtime, channels, locks",
     r"tokio|futures|mio::|async_channel|event_listener|concurrent_queue|parking|"
     r"epoll|futex|pthread|syscall|mutex|condvar|libglib|g_main|g_mutex|g_cond|"
     r"g_async_queue|waker|semaphore|select"),
    ("ICE, DTLS, STUN", r"dtls|ice|stun|turn"),
]

NAMED = re.compile(r"^\((\d+)\)(?:\s+(.*))?$")


def self_costs(dump):
    """(function [object], self instructions) for every function in one dump, read from
    callgrind's file format: cost lines under `fn=` are the function's own; the line after
    a `calls=` line is the inclusive cost of that call, which belongs to the callee."""
    names = {"fn": {}, "ob": {}}
    costs = {}
    fn, ob, call_next = "?", "?", False

    def name_of(kind, value):
        m = NAMED.match(value)
        if not m:
            return value
        if m.group(2) is not None:
            names[kind][m.group(1)] = m.group(2)
        return names[kind].get(m.group(1), value)

    for line in open(dump, errors="replace"):
        line = line.rstrip("\n")
        if not line or line[0] == "#":
            continue
        if line[0].isdigit() or line[0] in "+-*":
            parts = line.split()
            if call_next:
                call_next = False
            elif len(parts) >= 2:
                key = f"{fn} [{ob}]"
                costs[key] = costs.get(key, 0) + int(parts[1])
            continue
        key, _, value = line.partition("=")
        if key == "fn":
            fn = name_of("fn", value)
        elif key == "ob":
            ob = name_of("ob", value)
        elif key in ("cfn", "cfi", "cfl"):
            if key == "cfn":
                name_of("fn", value)
        elif key == "cob":
            name_of("ob", value)
        elif key == "calls":
            call_next = True
    return list(costs.items())


def split(dump):
    totals = {c: 0 for c, _ in CATEGORIES}
    totals["everything else"] = 0
    for name, ir in self_costs(dump):
        low = name.lower()
        for cat, pat in CATEGORIES:
            if re.search(pat, low):
                totals[cat] += ir
                break
        else:
            totals["everything else"] += ir
    return totals


def run_of(directory, server, n):
    path = os.path.join(directory, f"{server}-{n}.json")
    if not os.path.exists(path):
        return None
    info = json.load(open(path))
    dumps = sorted(glob.glob(os.path.join(directory, f"callgrind.{info['pid']}.*")))
    if not dumps:
        sys.exit(f"no callgrind dump for {server} with {n} viewers (pid {info['pid']})")
    return info, split(dumps[-1])


def main():
    directory = sys.argv[1]
    low, high = int(sys.argv[2]), int(sys.argv[3])
    print(f"Instructions per RTP packet sent, from {low} to {high} viewers "
          "(callgrind, user space only)\n")
    results = {}
    for server in ("edgecam", "janus"):
        a, b = run_of(directory, server, low), run_of(directory, server, high)
        if a is None or b is None:
            continue
        packets = b[0]["packets"] - a[0]["packets"]
        if packets <= 0:
            sys.exit(f"{server}: no more packets with {high} viewers than with {low}")
        per = {c: (b[1][c] - a[1][c]) / packets for c in b[1]}
        results[server] = (per, a[0], b[0])
    if not results:
        sys.exit("nothing measured")
    names = list(results)
    print("| what | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    cats = list(next(iter(results.values()))[0])
    for c in cats + ["total"]:
        cells = []
        for s in names:
            per = results[s][0]
            v = sum(per.values()) if c == "total" else per[c]
            cells.append(f"{v:,.0f}")
        label = f"**{c}**" if c == "total" else c
        print(f"| {label} | " + " | ".join(cells) + " |")
    print()
    for s in names:
        _, a, b = results[s]
        print(f"- {s}: {a['packets']:,} packets to {a['viewers']} viewers and "
              f"{b['packets']:,} to {b['viewers']} in {b['seconds']} s counted "
              f"({a['frames']:,} / {b['frames']:,} frames complete)")


if __name__ == "__main__":
    main()
