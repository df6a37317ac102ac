mkdir -p /tmp/e2e && python3 -c "
import numpy as np
n = 400000; i = np.arange(n)
tok = ((i * 7 + i // 13) % 500).astype(np.uint16)
hdr = np.zeros(256, np.int32); hdr[0] = 20240520; hdr[1] = 1; hdr[2] = n
open('/tmp/e2e/train_000.bin', 'wb').write(hdr.tobytes() + tok.tobytes())"
for a in auto blocksparse; do timeout 60 build/pebble train -c configs/gpt2-tiny.ini --set "data.train=/tmp/e2e/train_*.bin" --set data.val= --set model.n_head=2 --set model.seq_len=1024 --set train.batch_size=4 --set train.total_batch_tokens=4096 --set system.device=cuda --set model.attention=$a $( [ $a = blocksparse ] && echo --set attention.sparsity=local+global+random ) --set train.steps=20 --set run.plot=false --set sample.every=0 --set run.dir=/tmp/e2e/run_$a > /tmp/e2e/$a.log 2>&1; echo "train $a rc=$?"; grep -E "^pebble|^step (1|10|20)/|rror" /tmp/e2e/$a.log; done
