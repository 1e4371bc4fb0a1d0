"""Reads kiln's TensorBoard event files with TensorBoard's own reader and prints what it finds.

    .bench-venv/bin/pip install tensorboard
    .bench-venv/bin/python tools/check_tensorboard.py RUN_DIR/tensorboard

Used once to check the files kiln writes; the files it read are committed as
crates/kiln/tests/fixtures/tensorboard/ (from `kiln train` on the MNIST example, 2 epochs, with a
`tensorboard` callback, every_n_steps = 100), and crates/kiln/tests/suite/tensorboard.rs checks kiln's output
against them. Output of that check (TensorBoard 2.21):

train scalars: ['batch_loss', 'epoch_loss', 'epoch_accuracy', 'epoch_learning_rate']
train histograms: 6 (conv2d/kernel/histogram, conv2d/bias/histogram, dense/kernel/histogram, ...)
   batch_loss [(100, 0.608), (200, 0.2979), (300, 0.2471), (400, 0.3337)] ...
   epoch_loss [(1, 0.3062), (2, 0.1154)]
   epoch_accuracy [(1, 0.9088), (2, 0.9657)]
   epoch_learning_rate [(1, 0.001), (2, 0.001)]
   conv2d/kernel/histogram step 2: 288 values in [-0.6573, 0.3686], 30 buckets
validation scalars: ['epoch_loss', 'epoch_accuracy']
   epoch_loss [(1, 0.0759), (2, 0.0614)]
   epoch_accuracy [(1, 0.9803), (2, 0.9827)]
"""
import os
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

root = sys.argv[1]
for sub in sorted(os.listdir(root)):
    ea = EventAccumulator(os.path.join(root, sub), size_guidance={"histograms": 0, "scalars": 0})
    ea.Reload()
    tags = ea.Tags()
    print(sub, "scalars:", tags["scalars"])
    if tags["histograms"]:
        print(sub, "histograms:", len(tags["histograms"]), "(" + ", ".join(tags["histograms"][:3]) + ", ...)")
    for t in tags["scalars"]:
        print("  ", t, [(e.step, round(e.value, 4)) for e in ea.Scalars(t)][:4], "..." if len(ea.Scalars(t)) > 4 else "")
    for t in tags["histograms"][:1]:
        h = ea.Histograms(t)[-1].histogram_value
        print(f"   {t} step {ea.Histograms(t)[-1].step}: {h.num:.0f} values in [{h.min:.4f}, {h.max:.4f}], {len(h.bucket)} buckets")
