"""The capabilities of the runtime, each a small step: read local files, unpack, decode, transform, featurize,
encode, write."""

from gpuimages.task.steps.base import Step, Work
from gpuimages.task.steps.decode import Decode, ReturnImages
from gpuimages.task.steps.encode import Encode
from gpuimages.task.steps.featurize import Featurize
from gpuimages.task.steps.read_local import ReadLocal
from gpuimages.task.steps.shards import WriteShards
from gpuimages.task.steps.transform import Transform, Unroll
from gpuimages.task.steps.unpack import Unpack
from gpuimages.task.steps.write import Write

__all__ = [
    "Decode", "Encode", "Featurize", "ReadLocal", "ReturnImages", "Step", "Transform", "Unpack", "Unroll", "Work",
    "Write", "WriteShards",
]
