package egress

decision := {"allow": true} if {
	input.request.host == 
}
