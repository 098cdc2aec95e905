"""The FreeSWITCH stand-in (`screenpop simulate`): the ESL protocol server, capture replay, generated calls,
mod_json_cdr's posts. May import daemon.pbx (the wire format); the daemon never imports it at run time."""
