"""permalinkd: SageMathCell-compatible permalinks on replicated Redis (issue 4).

Layers (ARCHITECTURE sections 2, 6, 8):

- pure: ``ids`` (content-derived ids, lengthened on a prefix collision),
  ``zcodec`` (the ``z`` encoding), ``validation`` (parameters -> a cell or an
  ``InputError``), ``cache`` (size-bounded LRU), ``requestlog`` (one record);
- adapters: ``redisnode`` (txredisapi connections to one server), ``store``
  (one hash per permalink, create script + ``WAIT``, reads with replica
  fallback, batched read counts), ``sentinel`` (primary/replicas from
  Sentinel, ``+switch-master``), ``web`` (twisted.web resources), ``metrics``;
- wiring: ``tap`` (``Options`` -> ``settings.PermalinkSettings`` ->
  ``makeService(options, reactor)``).
"""
