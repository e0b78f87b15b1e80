"""The operator names shared by the model profile, the compute models and device profiles.

``OP_CLASSES``: the roofline's op classes (a device profile's ``compute.efficiency`` has one
entry per class; :func:`splitimpera.model.cost.profile_nodes` counts FLOPs per class).

``OP_KINDS``: the op kinds of the per-kind compute model; which graph node is which kind is
decided, with the node's features, in :mod:`splitimpera.model.node_features`.
"""

OP_CLASSES = ("conv", "linear", "other")
OP_KINDS = ("conv", "conv_dw", "conv_group", "linear", "matmul", "attention", "norm", "act", "pool", "eltwise",
            "concat", "view", "copy", "other")
