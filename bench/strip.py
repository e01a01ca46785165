"""Side-by-side strip for docs/: source | imfcodec | x264 at about the same rate, one val clip.

    python bench/strip.py      # after bench/rd_curve.py wrote bench/results/rd and runs/rd_anchors
Reads the streams the RD bench wrote (imf in bench/results/rd/streams, x264 in runs/rd_anchors/streams)
and their rates from streams.csv; decodes frame 84 (the middle of tpsmm_driving).
"""
import numpy as np, av, csv
from PIL import Image, ImageDraw
import imfcodec
from imfcodec import video
vid='tpsmm_driving'; k=84
src = video.to_uint8(video.to_model(np.stack(list(video.read_frames('../shared/data/faces/val/tpsmm_driving.mp4', max_frames=169))), 256))
m = imfcodec.load_model(None, 'cpu')
rows = {(r['codec'], r['setting']): r for r in csv.DictReader(open('bench/results/rd/streams.csv')) if r['video']==vid}
def imf(q):
    _, fr = imfcodec.decode_bytes(open(f'bench/results/rd/streams/{vid}_imf_q{q}.imf','rb').read(), m)
    return list(fr)[k]
def x264(crf):
    with av.open(f'runs/rd_anchors/streams/{vid}_x264_crf{crf}.h264', format='h264') as c:
        return [f.to_ndarray(format='rgb24') for f in c.decode(video=0)][k]
tiles = [(src[k], 'source'), (imf(1), f"imfcodec q1, {float(rows[('imf','q1')]['kbps']):.1f} kbps"),
         (x264(51), f"x264 CRF 51 (its floor), {float(rows[('x264','crf51')]['kbps']):.1f} kbps"),
         (imf(4), f"imfcodec q4, {float(rows[('imf','q4')]['kbps']):.1f} kbps"),
         (x264(44), f"x264 CRF 44, {float(rows[('x264','crf44')]['kbps']):.1f} kbps")]
W = 256; img = Image.new('RGB', (W*len(tiles) + 8*(len(tiles)-1), W + 22), 'white')
d = ImageDraw.Draw(img)
for i,(a,t) in enumerate(tiles):
    img.paste(Image.fromarray(a), (i*(W+8), 22)); d.text((i*(W+8)+4, 4), t, fill='black')
img.save('docs/strip_tpsmm_driving.png', optimize=True)
print(img.size)
