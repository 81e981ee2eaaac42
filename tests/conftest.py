from hypothesis import settings

# Loaded 2-core CI machines: no per-example deadline, the same number of examples.
settings.register_profile("sesame", deadline=None)
settings.load_profile("sesame")
