"""Test and benchmark tooling (a local llama.cpp server, a fault-injecting proxy, hostile inputs): not part of the installed package."""
