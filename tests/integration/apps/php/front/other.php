<?php echo "other script";
