"""NNX module class -> typed Linen wrapper: what is read from the class
(:mod:`.inspect`, :mod:`.kontext`) and the wrapper's class snippets (:mod:`.render`)."""
