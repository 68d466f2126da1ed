"""NNX wrappers of Linen modules: what generated ``nnx.Module`` classes call.

``__init__`` builds the Linen module and calls ``_rt.linen_init``
(:mod:`.init`); each method calls ``_rt.linen_call`` (:mod:`.call`), which
fills Linen mode arguments from the NNX mode (:mod:`.mode`), runs Linen's
``init_with_output`` or ``apply`` and writes what changed back into the
wrapper's variables (:mod:`.write_back`). :mod:`.stale` checks a generated
class against the Linen class it wraps.
"""
