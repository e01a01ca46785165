"""imfbench: the rate-distortion bench behind bench/rd_curve.py, one module per idea.

* :mod:`imfbench.common`  - results, errors, small parsers, the log, atomic CSV writing
* :mod:`imfbench.source`  - finding clips, the test source, the anchors' resampling
* :mod:`imfbench.metrics` - per-frame PSNR / MS-SSIM / LPIPS / DISTS, pulse and flicker
* :mod:`imfbench.anchors` - x264, x265, SVT-AV1, libvpx-vp9 and imfcodec runners
* :mod:`imfbench.bdrate`  - Bjontegaard delta rate and the best-size (convex hull) curves
* :mod:`imfbench.cache`   - the per-stream row cache that lets a run resume
* :mod:`imfbench.report`  - CSV tables, plots and meta.json
* :mod:`imfbench.run`     - the bench loop that bench/rd_curve.py drives
* :mod:`imfbench.sweep`   - a sweep of encoder settings on training clips (tools/ladder_sweep.py)

The package lives in bench/ and is a distribution of its own (bench/pyproject.toml), which
`make setup` installs editable (``pip install -e bench``), so every script in bench/, tools/
and experiments/ imports it with no sys.path edit. It is not part of the installed
``imfcodec`` library: it needs matplotlib, pandas and scipy, which the codec does not.
"""
