<?php header("Location: /elsewhere"); 
