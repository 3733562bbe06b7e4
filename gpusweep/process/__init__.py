"""A trial's processes: started, contained, watched and ended as one tree."""
