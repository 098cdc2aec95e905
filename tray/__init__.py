"""screenpop workstation tray client."""
