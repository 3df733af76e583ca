"""The ``tinkex`` command line."""
