"""Identity: tenants (teams), principals (people, service accounts) and their API tokens."""
