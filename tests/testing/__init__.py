"""Tests of the testing kit: the fake gateway and the manual clock."""
