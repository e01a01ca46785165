"""The ``.imf`` stream format: bytes <-> header and packets (:mod:`.container`, spec in
docs/bitstream.md) and what a stream holds (:mod:`.streaminfo`). No torch, no numpy."""
