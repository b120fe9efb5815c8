"""What a conversion leaves behind, torch-free and (but for ``resolve``'s loaders) Keras-free:
``names`` (file names, the report beside an artifact), ``record`` (the typed report),
``checksums`` (sha256, ``SHA256SUMS``), ``files`` (fsync, lock files), ``download`` (the one
downloader and cache policy), ``resolve`` (the one resolver behind ``--model`` and
``from_preset``). Import the module you need; this package imports nothing itself."""
