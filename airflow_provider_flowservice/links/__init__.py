"""Extra links of the Flow Service provider (read XCom only; never open a connection)."""
