"""Competition data: raw parsing, RLE, volumes, cache, folds and the synthetic generator."""
from .raw import CLASSES, DataError, discover_split, load_labels, parse_id, parse_slice_filename  # noqa: F401
from .rle import rle_decode, rle_encode  # noqa: F401
