"""jobd's domain: pure records and rules. Imports nothing of jobd but jobd.errors."""
