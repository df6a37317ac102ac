#!/usr/bin/python3
"""snakes2_reference.py: LRA's own Pathfinder generator, run here, for comparing pebble's images
with it. Runs snakes2.from_wrapper of a checkout of drewlinsley/pathfinder (not part of pebble;
give its path) with LRA's Pathfinder-32 parameters (lra_benchmarks/data/pathfinder.py's
docstring, hard), with the old scipy the data were made with: scipy.misc.imresize byte-scaled
its input and resized in PIL's 8-bit mode (the checkout's float replacement does not clip), and
imsave byte-scaled min -> 0, max -> 255. cv2.dilate (a maximum over the kernel's footprint),
matplotlib and scipy are stood in for here, so Debian's python3-pil and numpy suffice.

    /usr/bin/python3 dev/lra/snakes2_reference.py PATHFINDER_CHECKOUT N SEED OUT.npz

Prints the distractor snakes laid per image and the seed attempts that found no tail; OUT.npz
holds the images (x, N x 32 x 32 uint8) and labels (y), e.g. for the statistics pebble's
images are compared with in README ("Long Range Arena data").
"""
import collections
import os
import sys
import tempfile
import types

import numpy as np
from PIL import Image


def stand_ins():
    cv2 = types.ModuleType("cv2")
    cv2.useOptimized = lambda: None

    def dilate(im, kernel, iterations=1):  # OpenCV's: max over the kernel, anchor at its centre
        im = np.asarray(im, dtype=np.float64)
        k = np.asarray(kernel) > 0
        ph, pw = k.shape[0] // 2, k.shape[1] // 2
        p = np.pad(im, ((ph, ph), (pw, pw)), constant_values=-np.inf)
        out = np.full(im.shape, -np.inf)
        for dy, dx in zip(*np.nonzero(k)):
            out = np.maximum(out, p[dy:dy + im.shape[0], dx:dx + im.shape[1]])
        return out.astype(np.float32)

    cv2.dilate = dilate
    plt = types.ModuleType("matplotlib.pyplot")
    mpl = types.ModuleType("matplotlib")
    mpl.pyplot = plt
    scipy = types.ModuleType("scipy")
    scipy.ndimage = types.ModuleType("scipy.ndimage")
    sys.modules.update({"cv2": cv2, "matplotlib": mpl, "matplotlib.pyplot": plt, "scipy": scipy,
                        "scipy.ndimage": scipy.ndimage})


def bytescale(a):
    a = np.asarray(a, dtype=np.float64)
    lo, hi = a.min(), a.max()
    return ((a - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8) if hi > lo else np.zeros(a.shape, np.uint8)


def main():
    checkout, n, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    stand_ins()
    sys.path.insert(0, checkout)
    import snakes
    import snakes2
    old_imresize = lambda a, size, interp="lanczos": np.array(
        Image.fromarray(bytescale(a)).resize((size[1], size[0]), resample=Image.LANCZOS))
    snakes._imresize = snakes2._imresize = old_imresize
    images, labels, stats = [], [], collections.Counter()
    snakes2._imsave = lambda path, arr: images.append(bytescale(arr))
    snakes2.accumulate_meta = lambda array, label, *a, **k: labels.append(label) or array
    make_snake, seed_snake, available = snakes.make_snake, snakes.seed_snake, snakes.find_available_coordinates
    counts = []
    snakes.find_available_coordinates = lambda m, margin: counts.append(available(m, margin)[1]) or available(m, margin)

    def counted_make(*a, **k):  # only make_many_snakes calls it: the distractors
        r = make_snake(*a, **k)
        stats["distractors laid" if r[2] else "distractor attempts failed"] += 1
        return r

    def counted_seed(*a, **k):
        first = len(counts)
        r = seed_snake(*a, **k)
        if not r[-1] and len(counts) > first and counts[-1] == 0:
            stats["seed attempts with no tail"] += 1
        stats["seed attempts"] += 1
        return r
    snakes.make_snake, snakes.seed_snake = counted_make, counted_seed
    a = types.SimpleNamespace(
        batch_id=0, n_images=n, window_size=[32, 32], padding=1, antialias_scale=2,
        paddle_margin_list=[1], paddle_length=2, marker_radius=1.5, contour_length=14,
        paddle_thickness=0.5, seed_distance=7, continuity=1.0, distractor_length=14 // 3,
        num_distractor_snakes=20 // (14 // 3), snake_contrast_list=[2.0], paddle_contrast_list=[0.75],
        use_single_paddles=False, max_target_contour_retrial=4, max_distractor_contour_retrial=4,
        max_paddle_retrial=2, segmentation_task=False, segmentation_task_double_circle=False,
        pause_display=False, save_images=True, save_metadata=True,
        contour_path=tempfile.mkdtemp(prefix="snakes2_"))
    import random
    np.random.seed(seed)
    random.seed(seed)
    devnull = open(os.devnull, "w")
    stdout, sys.stdout = sys.stdout, devnull
    snakes2.from_wrapper(a)
    sys.stdout = stdout
    x = np.stack(images)
    np.savez(out, x=x, y=np.array(labels))
    print({k: round(v / n, 2) for k, v in stats.items()}, "per image")
    print(f"{n} images: share > 0 {np.mean(x > 0):.3f}, > 64 {np.mean(x > 64):.3f}, mean {x.mean():.1f}")


if __name__ == "__main__":
    main()
