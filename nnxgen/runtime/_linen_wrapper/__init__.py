"""Linen wrappers of NNX modules: what generated ``nn.Module`` classes call.

A generated method is one line, ``return _rt.call(self, "__call__", (x,), {},
train)``; :mod:`.call` tells the whole init / apply story. One module per step:

* :mod:`.spec` -- what a generated class declares (``__nnxgen__``), and
  :mod:`.init_method` -- the ``init`` it gets, which marks the output discarded;
* :mod:`.build` -- constructing the NNX module from the wrapper's fields;
* :mod:`.rngs` -- the ``nnx.Rngs`` it is handed, and :mod:`.rng_state` --
  seeding its streams from Linen's ``make_rng`` at apply;
* :mod:`.state` -- Linen variables <-> NNX state, :mod:`.boxing` -- sharding
  metadata as Linen boxes, :mod:`.immutable` -- Linen's immutable collections;
* :mod:`.layout` -- what apply needs about one configuration,
  :mod:`.layout_cache` -- computing it once (traced), :mod:`.keys` -- its
  cache keys, :mod:`.attach` -- state that methods add later;
* :mod:`.mode` -- train / eval, :mod:`.sow` -- ``Module.sow`` under
  ``nnx.capture``, :mod:`.init` -- ``init`` without a redundant forward pass,
  :mod:`.stale` -- a stale generated file.
"""
