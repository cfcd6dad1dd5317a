<?php echo "index of sub";
