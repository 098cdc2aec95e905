"""FreeSWITCH's side of the pipeline: the ESL wire format (one frame splitter, one event decoder, also used
by the simulator) and the supervised event-socket connection. Imports nothing else of screenpop."""
