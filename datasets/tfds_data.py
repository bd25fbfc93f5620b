"""placeholder"""


def load(name, target, data_dir=None):
    raise NotImplementedError
