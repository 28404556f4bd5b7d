"""Run logs: kept under the data directory, bounded, never silently losing their beginning.

conmon writes each container's output to a k8s-file (`<RFC3339Nano> <stream> <F|P> <text>`),
`logs/<run-id>/container.log`, with no size cap (conmon's cap would throw away the start of the
output). That file *is* the run's log: jobd never copies it. The pump follows how far conmon
has written whole lines and keeps, in `state.json`:

    [0, head_end)            the head: the first `head_bytes` of output, kept forever
    [head_end, tail_start)   dropped: its disk blocks are punched out (FALLOC_FL_PUNCH_HOLE)
    [tail_start, end)        the tail: the newest `max_bytes - head_bytes` of output

The tail is trimmed in steps of `segment_bytes`, always at a line boundary. Readers see the
head, a `[jobd] N bytes omitted` marker line when something was dropped, then the tail. A
pump that only moves offsets costs almost no CPU however fast a job writes: the bytes go from
conmon to the page cache once. The log outlives the container and the daemon.

run_log.py keeps one run's log, pump.py follows every running run's, lines.py parses and
filters k8s-file lines, follower.py reads what a live log appends.
"""
