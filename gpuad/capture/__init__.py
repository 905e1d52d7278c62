"""Compiled functions: trace a step of tensor work once, then replay it without Python per
op (:func:`compile`)."""
from .compiled import Compiled, CompileWarning, compile
from .steps import CompileError

__all__ = ["compile", "Compiled", "CompileError", "CompileWarning"]
