
this-is-a-cursor=