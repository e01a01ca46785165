"""Where the bytes of .imf streams go, per quality level: the coded pictures and token
strings, and what the container and the token coder add around them. For a bench run's
streams (``rd_curve.py --out DIR`` writes DIR/streams/<clip>_imf_q<q>.imf):

    python bench/stream_overhead.py runs/rdT/streams --model imf-cpu-base

Per level, pooled over the clips (bytes x 8 / seconds of video), in kbps:
  file         every byte of the files;
  header       the file headers;
  keyframes    the K/P packets' pictures and their tokens' symbols;
  base         the B packets' deflate streams (the base pictures);
  tokens       what the T packets' symbol differences cost under the model's tables
               (TokenEntropyModel.bits, CompressAI's exact cost);
  rans         what the rANS strings add to that (the flushed 64-bit state, 32-bit words);
  framing      every packet's type, length, CRC-16 and the fields before its payload.
What a leaner token or packet format could save is at most rans + part of framing.
"""
import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

from imfcodec.format.container import BasePacket, KeyframePacket, TokenPacket, _base_body, packet_to_bytes, parse, put_svarint, put_uvarint
from imfcodec.model import load_model

PARTS = ("file", "header", "keyframes", "base", "tokens", "rans", "framing")


def split(data: bytes, model) -> dict:
    """Bytes of one stream by part (PARTS)."""
    header, packets = parse(data)
    out = dict.fromkeys(PARTS, 0.0)
    out["file"] = out["header"] = len(data)
    for p in packets:
        n = len(packet_to_bytes(p))
        out["header"] -= n              # what no packet holds is the file header
        if isinstance(p, KeyframePacket):
            pay = len(p.payload) + sum(len(put_svarint(int(s))) for s in p.ref_symbols)
            out["keyframes"] += pay
        elif isinstance(p, TokenPacket):
            pay = len(p.payload)
            bits = model.entropy.bits(model.entropy.decode(p.payload, p.count, header.quality), header.quality)
            out["tokens"] += bits / 8
            out["rans"] += pay - bits / 8
        elif isinstance(p, BasePacket):
            pay = len(_base_body(p)) - len(put_uvarint(p.first_frame)) - len(put_uvarint(len(p.pictures))) - 1
            out["base"] += pay
        else:                       # face-framing packets: counted as framing and payload alike
            pay = 0
        out["framing"] += n - pay
    return out, header.frame_count / float(header.fps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("streams", help="a folder of .imf files named ..._q<level>.imf")
    ap.add_argument("--model", default=None, help="the model the streams were coded with")
    a = ap.parse_args(argv)
    model = load_model(a.model, "cpu", "fp32")
    by_level = defaultdict(lambda: [dict.fromkeys(PARTS, 0.0), 0.0, 0])
    for f in sorted(Path(a.streams).glob("*.imf")):
        m = re.search(r"_q(\d+)\.imf$", f.name)
        if not m:
            continue
        parts, seconds = split(f.read_bytes(), model)
        acc = by_level[int(m.group(1))]
        for k in PARTS:
            acc[0][k] += parts[k]
        acc[1] += seconds
        acc[2] += 1
    print("level clips " + " ".join(f"{k:>9}" for k in PARTS) + "   (kbps; rans + framing as % of file)")
    for q in sorted(by_level):
        parts, seconds, n = by_level[q]
        kb = {k: parts[k] * 8 / seconds / 1000 for k in PARTS}
        print(f"q{q:<4} {n:>5} " + " ".join(f"{kb[k]:9.3f}" for k in PARTS)
              + f"   {100 * (kb['rans'] + kb['framing']) / kb['file']:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
