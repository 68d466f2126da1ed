"""Linen module class -> typed NNX wrapper: what is read from the class
(:mod:`.inspect`) and the wrapper's class snippets (:mod:`.render`)."""
