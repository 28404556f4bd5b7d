"""What the edge asks of jobd: each service parses nothing and renders little; it checks a
request against the rules, writes intent to the store, and wakes the supervisor. Services
never touch the runtime: what they need of it (an image's digest, an exec session, what it
says of itself) the daemon hands them as a callable."""
