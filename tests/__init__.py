"""jetmesh tests; a package so that agent processes can import test agents."""
