"""attrib's JAX/Flax backend (registered through the ``attrib`` entry points).

Importing this package does not import jax; the implementation modules do,
when the backend is first used.
"""
