"""Finds ONVIF cameras the way NVRs do, with the WSDiscovery library: a Probe for
NetworkVideoTransmitter, answers collected for a few seconds, printed as JSON."""
import json
import sys

from wsdiscovery import QName
from wsdiscovery.discovery import ThreadedWSDiscovery as WSDiscovery

wsd = WSDiscovery()
wsd.start()
try:
    types = [QName("http://www.onvif.org/ver10/network/wsdl", "NetworkVideoTransmitter")]
    found = wsd.searchServices(types=types, timeout=float(sys.argv[1]) if len(sys.argv) > 1 else 3)
    print(json.dumps([
        {"epr": s.getEPR(), "xaddrs": list(s.getXAddrs()), "scopes": [str(x) for x in s.getScopes()]}
        for s in found
    ]))
finally:
    wsd.stop()
