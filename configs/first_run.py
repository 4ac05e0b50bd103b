"""A first run in about a minute: Cifar-quick ACNet (the later recipe, cosine)
on 2,000 of the training images of an image folder for 3 epochs, tested on
all its test images. The folder is given on the command line:

    ./run.sh first_run --config.data_dir=/tmp/cifar10
"""

from acnet_jax.training import presets


def get_config():
  config = presets.preset('cfqkbnc', 'acnet_cosine')
  config.update(
    dict(
      dataset='image_folder',
      max_train_examples=2000,
      batch_size=64,
      num_epochs=3,
      eval_every_epochs=3,
      name='first_run',
    )
  )
  return config
