"""The RBD driver's own tests (a package, so its conftest does not collide with others;
not named `rbd`, which would shadow the librbd bindings)."""
