"""Pure domain logic: no database, no HTTP, nothing else of Corral's."""
