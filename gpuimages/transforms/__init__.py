"""Image operations on stacks of same-sized images (numpy on CPU, cupy on a GPU).

:mod:`.ops` holds the operations, :mod:`.stages` the JSON stage specs of ``ImageTransformer`` (checked
on the driver, applied in tasks), :mod:`.histogram` the built-in feature backbone and :mod:`.arrays`
the choice of array module inside a task.
"""
