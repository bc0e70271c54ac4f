"""Everything that runs inside a Spark task: one runtime for every in-task capability.

The driver builds a picklable :class:`~gpuimages.task.spec.StageSpec` and hands
:func:`~gpuimages.task.runner.run_partition` to ``mapInArrow`` (through
:func:`gpuimages.stage.run_stage`, the only caller of ``mapInArrow``). Inside the task there is one
partition loop (:mod:`.runner`), one device resolver (:mod:`.device`), one bounded worker cache
(:mod:`.cache`) and one image batch type (:mod:`.images`); decoding, transforming, featurising,
encoding and writing are small steps on it (:mod:`.steps`).

Nothing in this package imports ``pyspark.sql`` or ``pyspark.ml``, and no GPU library is imported
until a step that needs one opens on a GPU.
"""
