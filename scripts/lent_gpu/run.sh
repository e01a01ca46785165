#!/bin/bash
# Device side of a lent GPU session: setup, then runs side by side on the one GPU.
#   first call  (carry .gpu/a): mkdir -p /root/stash_a && cp -r .gpu/a/. /root/stash_a/
#   second call (carry .gpu/b): GPU_A=/root/stash_a bash scripts/lent_gpu/run.sh SECS NAME=CONFIG ...
# Each NAME's best/last (generator average + discriminator, fp16) and logs come back in $OUT.
export PYTHONUNBUFFERED=1 IMFCODEC_HOME=/root/imfh OMP_NUM_THREADS=6
SECS=$1; shift
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
test -d ${GPU_A:-.gpu/a} || { echo "NO STASH: the first call's payload is gone (the machine went back)"; exit 3; }
python3 scripts/lent_gpu/drive.py setup || exit 4
for run in "$@"; do
    python3 scripts/lent_gpu/drive.py train ${run%%=*} ${run#*=} $SECS > $OUT/${run%%=*}.txt 2>&1 &
done
wait
grep -hE "validation|time limit|done" $OUT/*.txt | cut -c1-160; ls -la $OUT
