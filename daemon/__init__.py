"""screenpop daemon: FreeSWITCH event socket, call tracking, and the simulator."""
