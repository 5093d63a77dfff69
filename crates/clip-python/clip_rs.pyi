"""Type stubs for clip_rs, the Python bindings of CLIP in Rust (see docs/python.md)."""

import os
from typing import Literal, Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

__version__: str

ImageItem = Union[str, "os.PathLike[str]", bytes, bytearray, npt.NDArray[np.uint8]]

class ClipError(Exception):
    """An error reported by the CLIP library (a model that cannot be loaded, a failed computation)."""

class Model:
    """A CLIP model with its tokenizer and preprocessing, as returned by `load`."""

    @property
    def embedding_dim(self) -> int: ...
    @property
    def image_size(self) -> int: ...
    @property
    def context_length(self) -> int: ...
    @property
    def dtype(self) -> str: ...
    @property
    def spec(self) -> str: ...
    def encode_images(
        self,
        items: Union[Sequence[ImageItem], npt.NDArray[np.uint8]],
        normalize: bool = False,
        on_error: Literal["raise", "nan"] = "raise",
    ) -> npt.NDArray[np.float32]: ...
    def encode_texts(
        self, texts: Union[str, Sequence[str]], normalize: bool = False, truncate: bool = False
    ) -> npt.NDArray[np.float32]: ...
    def preprocess(self, item: ImageItem) -> npt.NDArray[np.float32]: ...
    def tokenize(self, texts: Union[str, Sequence[str]], truncate: bool = False) -> npt.NDArray[np.int32]: ...

def load(
    spec: str,
    dtype: Literal["f32", "bf16", "int8", "auto"] = "f32",
    threads: Optional[int] = None,
    *,
    cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    offline: bool = False,
) -> Model: ...
def tokenize(
    texts: Union[str, Sequence[str]], context_length: int = 77, truncate: bool = False
) -> npt.NDArray[np.int32]: ...
