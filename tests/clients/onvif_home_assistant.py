"""The ONVIF calls Home Assistant's integration makes when it adds a camera, made with
its own library (onvif-zeep-async): prints what it learnt as one JSON object."""
import asyncio
import json
import os
import sys

import onvif
from onvif import ONVIFCamera


async def main(host: str, port: int, user: str, password: str) -> None:
    wsdl = os.path.join(os.path.dirname(onvif.__file__), "wsdl")
    cam = ONVIFCamera(host, port, user or None, password or None, wsdl)
    out = {}
    try:
        await cam.update_xaddrs()
        dev = await cam.create_devicemgmt_service()
        t = await dev.GetSystemDateAndTime()
        out["utc_year"] = t.UTCDateTime.Date.Year
        info = await dev.GetDeviceInformation()
        out["model"] = info.Model
        out["firmware"] = info.FirmwareVersion
        out["serial"] = info.SerialNumber
        nics = await dev.GetNetworkInterfaces()
        out["macs"] = [n.Info.HwAddress for n in nics if n.Info]
        caps = await dev.GetCapabilities({"Category": "All"})
        out["media_xaddr"] = caps.Media.XAddr
        media = await cam.create_media_service()
        mcaps = await media.GetServiceCapabilities()
        out["snapshot_capable"] = bool(mcaps.SnapshotUri)
        profiles = await media.GetProfiles()
        out["profiles"] = []
        for p in profiles:
            enc = p.VideoEncoderConfiguration
            if enc is None or enc.Encoding != "H264":
                continue
            req = media.create_type("GetStreamUri")
            req.ProfileToken = p.token
            req.StreamSetup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
            uri = await media.GetStreamUri(req)
            out["profiles"].append(
                {
                    "token": p.token,
                    "width": enc.Resolution.Width,
                    "height": enc.Resolution.Height,
                    "uri": uri.Uri,
                }
            )
        snap = await media.GetSnapshotUri({"ProfileToken": profiles[0].token})
        out["snapshot_uri"] = snap.Uri
        # As the camera entity fetches it (HTTP Digest with the ONVIF credentials).
        image = await cam.get_snapshot(profiles[0].token)
        out["snapshot_jpeg_bytes"] = len(image) if image and image[:2] == b"\xff\xd8" else 0
    except Exception as e:  # what the integration would log
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        await cam.close()
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *(sys.argv[3:5] + ["", ""])[:2]))
