"""Input pipelines: which examples each step sees, and how they reach the device.

order          epoch order, batch indices, process shares: pure functions of (seed, step)
keys           the root key of a run's random draws (threefry: the same on every platform)
image_folder   `root/<split>/<class>/*` folders
transforms     host decoding and augmentation, as torchvision's
on_device      CIFAR augmentation and normalisation inside the jitted step
memory         data sets held in memory as arrays: the table of them
download       tfds downloads that fail fast offline
stream         grain batches decoded on host threads (ImageNet), tfds array_record sources
feeds          the one face of both paths: MemoryFeed, StreamFeed, create_feed
"""
